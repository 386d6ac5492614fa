"""minildm.pretrained"""
