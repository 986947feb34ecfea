"""Thin Typer commands. Heavy imports (TensorFlow above all) happen inside the commands."""
