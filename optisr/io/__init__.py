"""optisr.io"""
