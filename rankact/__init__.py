"""rankact: tool-using ReAct agents that learn from people's rankings of their trajectories."""
