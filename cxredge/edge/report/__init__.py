"""cxredge report: the HTML page and its Markdown twin, one module per section. TF-free."""
