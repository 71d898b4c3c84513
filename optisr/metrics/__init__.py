"""optisr.metrics"""
