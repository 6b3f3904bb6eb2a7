"""The networks and what they are made of: networks (generator, discriminators), layers,
fast_ops (speed tricks beside the ops they replace), losses, image_pool, and workdir (the
on-disk form of a trained run and loading its generators)."""
