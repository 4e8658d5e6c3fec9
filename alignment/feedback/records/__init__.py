"""The raw records people produce, as the store keeps them: rankings of a question's
trajectories, ties and step flags included (`rankings`), and end users' votes (`end_user`).

They sit below both the store, which keeps them, and the preference data derived from them
(the preferences package), which reads the store: with them among the preferences, store and
preferences imported each other.
"""
