"""minildm.train"""
