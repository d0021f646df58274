"""Training losses: the self-similarity loss (SSL) and its edge mask."""

from sslsr.losses.edge import edge_mask, mask_stride_pattern
from sslsr.losses.ssl import self_similarity_graph, ssl_loss
