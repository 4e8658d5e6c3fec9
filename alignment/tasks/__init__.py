"""Tasks: the questions an agent answers (task files), the evaluation datasets they are built
from, and the data bundled with rankact."""
from rankact.alignment.tasks.task import Task, TaskFileError, load_tasks, write_tasks

__all__ = ["Task", "TaskFileError", "load_tasks", "write_tasks"]
