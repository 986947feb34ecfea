"""Plots and tables of a bench (PNG, Markdown, console). TF-free."""
