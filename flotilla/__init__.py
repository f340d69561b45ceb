"""Flotilla: a multi-host compute service in the spirit of OpenStack Nova."""

__version__ = "0.1.0"
