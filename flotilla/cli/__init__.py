"""The ``flotilla`` command line client, built on openstacksdk."""
