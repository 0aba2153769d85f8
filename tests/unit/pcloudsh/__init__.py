"""In-process tests of pcloudsh."""
