"""The recorder for live applications: every trajectory and end-user vote an app produces,
delivered to a store or a service without slowing the app down.

Modules: `recorder` (`Recorder`, the app-facing object), `spool` (the on-disk queue that
survives a restart or an outage), `targets` (where the spool delivers: a store URL or a
service).
"""
