/*
 * test_metrics.c: unit tests of lib/metrics.c, the bounded Prometheus text
 * writer: the exact text of each kind of metric, and truncation.
 */
#include "config.h"
#include "metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void test_text(void **state)
{
	static const double le[] = {0.001, 0.0025, 1};
	const struct rtw_hist_bounds b = {RTW_ARRAY_LEN(le), le};
	const uint64_t counts[] = {1, 0, 2, 3};
	char buf[2048];
	struct rtw_metrics w;

	rtw_metrics_init(&w, buf, sizeof(buf));
	rtw_metrics_counter(&w, "a_total", "Things.", 7);
	rtw_metrics_gauge(&w, "b", NULL, 3);
	rtw_metrics_gauge(&w, "c_seconds", NULL, 0.25);
	rtw_metrics_family(&w, "d", RTW_METRIC_COUNTER, "By route.");
	rtw_metrics_u64(&w, "d", "route=\"x\",status=\"200\"", 18446744073709551615ull);
	rtw_metrics_family(&w, "h_seconds", RTW_METRIC_HISTOGRAM, NULL);
	rtw_metrics_histogram(&w, "h_seconds", "route=\"x\"", &b, counts, 1.5);
	rtw_metrics_histogram(&w, "h_seconds", NULL, &b, counts, 0);
	assert_int_equal(rtw_metrics_end(&w), RTW_OK);
	assert_int_equal(w.len, strlen(buf));
	assert_string_equal(buf,
			    "# HELP a_total Things.\n# TYPE a_total counter\na_total 7\n"
			    "# TYPE b gauge\nb 3\n"
			    "# TYPE c_seconds gauge\nc_seconds 0.250000\n"
			    "# HELP d By route.\n# TYPE d counter\nd{route=\"x\",status=\"200\"} 18446744073709551615\n"
			    "# TYPE h_seconds histogram\n"
			    "h_seconds_bucket{route=\"x\",le=\"0.001\"} 1\n"
			    "h_seconds_bucket{route=\"x\",le=\"0.0025\"} 1\n"
			    "h_seconds_bucket{route=\"x\",le=\"1\"} 3\n"
			    "h_seconds_bucket{route=\"x\",le=\"+Inf\"} 6\n"
			    "h_seconds_sum{route=\"x\"} 1.500000\n"
			    "h_seconds_count{route=\"x\"} 6\n"
			    "h_seconds_bucket{le=\"0.001\"} 1\n"
			    "h_seconds_bucket{le=\"0.0025\"} 1\n"
			    "h_seconds_bucket{le=\"1\"} 3\n"
			    "h_seconds_bucket{le=\"+Inf\"} 6\n"
			    "h_seconds_sum 0.000000\n"
			    "h_seconds_count 6\n");
}

static void test_bucket(void **state)
{
	static const double le[] = {0.001, 0.01, 1};
	const struct rtw_hist_bounds b = {RTW_ARRAY_LEN(le), le};

	assert_int_equal(rtw_hist_bucket(&b, 0), 0);
	assert_int_equal(rtw_hist_bucket(&b, 0.001), 0); /* le is inclusive */
	assert_int_equal(rtw_hist_bucket(&b, 0.0011), 1);
	assert_int_equal(rtw_hist_bucket(&b, 1), 2);
	assert_int_equal(rtw_hist_bucket(&b, 1.5), 3);
}

/* A line that does not fit is dropped whole, and so is everything after. */
static void test_truncation(void **state)
{
	char buf[40];
	struct rtw_metrics w;

	rtw_metrics_init(&w, buf, sizeof(buf));
	rtw_metrics_u64(&w, "first", NULL, 1);		     /* 8 bytes */
	rtw_metrics_u64(&w, "second_metric_name", NULL, 22); /* 22 bytes: 30 */
	assert_int_equal(rtw_metrics_end(&w), RTW_OK);
	rtw_metrics_u64(&w, "third_long_name", NULL, 333); /* 20 more: no room */
	assert_int_equal(rtw_metrics_end(&w), RTW_ERROR);
	assert_string_equal(buf, "first 1\nsecond_metric_name 22\n");
	assert_int_equal(w.len, strlen(buf));
	rtw_metrics_u64(&w, "x", NULL, 1); /* would fit, but the text is already cut */
	assert_string_equal(buf, "first 1\nsecond_metric_name 22\n");
	rtw_metrics_init(&w, buf, 0);
	assert_int_equal(rtw_metrics_end(&w), RTW_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text),
	    cmocka_unit_test(test_bucket),
	    cmocka_unit_test(test_truncation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
