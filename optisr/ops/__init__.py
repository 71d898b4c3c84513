"""optisr.ops"""
