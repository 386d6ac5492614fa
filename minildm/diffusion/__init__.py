"""minildm.diffusion"""
