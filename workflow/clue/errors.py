class ClueError(Exception):
    """A user-facing error: bad config, bad input file, unsupported model. The CLI prints it
    without a traceback and exits with status 2."""
