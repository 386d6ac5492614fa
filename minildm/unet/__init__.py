"""minildm.unet"""
