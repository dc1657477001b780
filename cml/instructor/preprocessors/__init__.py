"""nbgrader preprocessors: intake repairs, resilient execution, verdicts, feedback without hidden tests."""
