import numpy as np

def bucket_partials(
    timestamps_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, bucket_ns: int, max_cells: int
) -> tuple[np.ndarray, ...] | None: ...
