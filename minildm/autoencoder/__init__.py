"""minildm.autoencoder"""
