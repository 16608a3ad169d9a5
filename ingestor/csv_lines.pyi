import numpy as np

def value_texts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def csv_lines(
    timestamps_ns: np.ndarray,
    text: np.ndarray,
    offsets: np.ndarray,
    codes: np.ndarray,
    tails: np.ndarray,
    tail_offsets: np.ndarray,
    fallback: np.ndarray,
    fallback_text: np.ndarray,
    fallback_offsets: np.ndarray,
) -> memoryview: ...
