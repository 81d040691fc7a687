"""The admin console (issue 24): users, the transcode queue, the whole library and the
audit log, for the /api/admin/ routes and the `videoflix users|jobs` commands alike."""
