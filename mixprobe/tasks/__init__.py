"""The task protocol: the one thing a user writes to study their own mixture question (docs/howto/define_a_task.md)."""
from mixprobe.tasks.pairs import Pair, as_pairs
from mixprobe.tasks.protocol import Component, Prompt, Task, TaskSpec, as_task, load_task, task_for

__all__ = ["Component", "Pair", "as_pairs", "Prompt", "Task", "TaskSpec", "as_task", "load_task", "task_for"]
