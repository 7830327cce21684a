"""Online serving: the data plane, its model pool, and the HTTP app around them."""
