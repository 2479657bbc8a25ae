"""Conditional GAN and diffusion generators for class-balanced synthetic nodules."""
