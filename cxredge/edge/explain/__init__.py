"""Occlusion saliency: compute, run over images, render overlays. TF-free."""
