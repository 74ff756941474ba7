# sse/: (filled in by its component)
