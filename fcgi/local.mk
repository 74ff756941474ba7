# fcgi/: (filled in by its component)
