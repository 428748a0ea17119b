"""sms-dispatch: send the SMS messages waiting in a database through a webhook provider."""

__version__ = "0.1.0"
