"""minildm.data"""
