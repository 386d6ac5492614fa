"""minildm.losses"""
