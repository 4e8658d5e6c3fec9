"""The recorder for live applications: every trajectory and end-user vote an app produces,
delivered to a store or a service without slowing the app down.

Modules: `recorder` (`Recorder`, the app-facing object), `recording_agent` (what
`Recorder.wrap(agent)` returns), `spool` (the on-disk queue that survives a restart or an
outage), `private_files` (the spool's files, never through a planted link), `targets` (where
the spool delivers: a store URL or a service, and what each answer means).
"""
