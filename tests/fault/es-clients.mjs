// es-clients.mjs: the fault suite's third-party judge. N standard
// EventSource clients (the `eventsource` npm package, which follows the
// WHATWG spec: it reconnects with Last-Event-ID after a network error or
// the end of a stream, and closes for good on any non-200 answer or a
// wrong Content-Type) subscribe to one URL and record what they get.
//
//   node es-clients.mjs URL N
//
// Commands on stdin, one per line:
//   report   print one JSON line: {"clients":[{ids, inits, opens, errors,
//            closed, close_reason}, ...]}
//   quit     close every client and exit
// A line "ready" is printed once every client has opened once.
import { EventSource } from "eventsource";
import readline from "node:readline";

const [url, nArg] = process.argv.slice(2);
const n = Number(nArg);
if (!url || !(n > 0)) {
	console.error("usage: node es-clients.mjs URL N");
	process.exit(2);
}

const clients = [];
let ready = false;

function open(i) {
	const c = { ids: [], inits: 0, opens: 0, errors: 0, closed: false, close_reason: null, es: null };
	const es = new EventSource(url);
	c.es = es;
	es.onopen = () => {
		c.opens++;
		if (!ready && clients.length === n && clients.every((x) => x.opens > 0)) {
			ready = true;
			console.log("ready");
		}
	};
	es.onmessage = (ev) => {
		let m;
		try {
			m = JSON.parse(ev.data);
		} catch {
			c.bad = (c.bad || 0) + 1;
			return;
		}
		if (m.type === "init") c.inits++;
		else if (m.id !== undefined) c.ids.push(m.id);
	};
	es.onerror = (ev) => {
		c.errors++;
		// readyState CLOSED after an error: the client has given up for good
		if (es.readyState === EventSource.CLOSED) {
			c.closed = true;
			c.close_reason = `${ev.code ?? ""} ${ev.message ?? ""}`.trim();
		}
	};
	clients[i] = c;
}

// staggered, as viewers arrive
for (let i = 0; i < n; i++) {
	open(i);
	if (i % 20 === 19) await new Promise((r) => setTimeout(r, 10));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
	const cmd = line.trim();
	if (cmd === "report") {
		const out = clients.map(({ es, ...rest }) => ({ ...rest, state: es.readyState }));
		process.stdout.write(JSON.stringify({ clients: out }) + "\n");
	} else if (cmd === "quit") {
		for (const c of clients) c.es.close();
		process.exit(0);
	}
});
rl.on("close", () => {
	for (const c of clients) c.es.close();
	process.exit(0);
});
