"""cxredge bench --remote: bench on other machines over SSH (system OpenSSH client). TF-free.

ssh.py      targets (USER@HOST[:PORT]), the ssh command line, one shared connection, errors in one line
session.py  one device: facts, Python/venv (pip install), upload, `python -m cxredge bench`, fetch
pack.py     the bundle sent to a device: the chosen models and the chosen labelled images
"""
