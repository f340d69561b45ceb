"""Parse the command line and config files, failing early and clearly.

oslo.config checks a value only when it is first read, so a typo in a file
would otherwise surface as a traceback deep inside a running daemon. ``load``
reads every registered option once at start-up and turns the first problem
into a :class:`ConfigError` naming the option; ``main`` helpers print that as
one line and exit non-zero.
"""

from __future__ import annotations

import sys

from oslo_config import cfg

from flotilla import __version__
from flotilla.conf import types as _types

_OWN_TYPES = (_types.TransportURL, _types.DatabaseURL)


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator."""


def load(argv: list[str] | None, prog: str,
         conf: cfg.ConfigOpts | None = None,
         default_config_files: list[str] | None = None) -> cfg.ConfigOpts:
    """Parse ``argv`` (without the program name) and validate every option."""
    conf = conf or cfg.CONF
    try:
        conf(argv if argv is not None else sys.argv[1:], project="flotilla",
             prog=prog, version=__version__,
             default_config_files=default_config_files)
    except cfg.ConfigFilesNotFoundError as exc:
        raise ConfigError("config file not found: %s"
                          % ", ".join(exc.config_files)) from None
    except cfg.ConfigDirNotFoundError as exc:
        raise ConfigError("config directory not found: %s"
                          % exc.config_dir) from None
    except cfg.ConfigFileParseError as exc:
        raise ConfigError("cannot parse config file %s: %s"
                          % (exc.config_file, exc.msg)) from None
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from None
    validate(conf)
    return conf


def validate(conf: cfg.ConfigOpts) -> None:
    """Read every registered option; raise ConfigError on the first bad one."""
    for group_name, opts in _all_opts(conf):
        group = conf if group_name is None else getattr(conf, group_name)
        for opt in opts:
            try:
                getattr(group, opt.dest)
            except (cfg.ConfigFileValueError, ValueError) as exc:
                raise ConfigError(
                    "invalid value for [%s] %s: %s"
                    % (group_name or "DEFAULT", opt.name,
                       _reason(exc, opt))) from None


def _all_opts(conf: cfg.ConfigOpts):
    yield None, [info["opt"] for info in conf._opts.values()]
    for name, group in conf._groups.items():
        yield name, [info["opt"] for info in group._opts.values()]


def _reason(exc: Exception, opt: cfg.Opt) -> str:
    # oslo.config's message repeats the value and a LocationInfo repr; keep the
    # reason and the file. A secret's value (a password in a transport URL)
    # must never reach a terminal or a log, and our own types never echo it.
    text = str(exc)
    where = ""
    if " is not valid: " in text:
        head, text = text.split(" is not valid: ", 1)
        if "detail='" in head:
            where = " (in %s)" % head.split("detail='", 1)[1].split("'", 1)[0]
    if opt.secret and not isinstance(opt.type, _OWN_TYPES):
        text = "not a valid value"
    return text + where


def exit_on_error(fn):
    """Decorate a ``main``: a ConfigError becomes one stderr line and exit 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "flotilla"
            print("%s: configuration error: %s" % (prog, exc), file=sys.stderr)
            sys.exit(2)
    return wrapper
