"""The edge side: runs on a Raspberry Pi or a phone with numpy, Pillow and a LiteRT runtime.

Nothing in this package may import TensorFlow, directly or through another module (tests prove it).
"""
