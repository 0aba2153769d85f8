"""pcloudsh: the admin shell of pacemaker-cloud (interactive, or one command per run)."""
