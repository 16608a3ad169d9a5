"""The tools around the code: bench/, scripts/ and devtools/."""
