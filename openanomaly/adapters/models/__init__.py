"""Model engines: forecasting with models loaded in this process or served remotely."""
