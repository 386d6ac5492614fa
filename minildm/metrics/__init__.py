"""minildm.metrics"""
