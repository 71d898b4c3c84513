"""optisr.guided"""
