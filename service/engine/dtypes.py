"""The dtypes under their TensorFlow names: NumPy dtypes, so `t.dtype == tg.float32` holds."""

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool = np.dtype(np.bool_)  # tf.bool
