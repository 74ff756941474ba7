# webhookd/: (filled in by its component)
