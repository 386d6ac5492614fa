"""minildm.conditioning"""
