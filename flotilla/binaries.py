"""The names of Flotilla's daemons, as services report them (os-services,
``flotilla-manage service list``) and as their units and logs are called."""

API = "flotilla-api"
COMPUTE = "flotilla-compute"
CONDUCTOR = "flotilla-conductor"
SCHEDULER = "flotilla-scheduler"
VOLUME = "flotilla-volume"
