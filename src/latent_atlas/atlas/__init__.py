"""The latent atlas: one self-contained, interactive HTML map of a model's latent space.

`neighbours` (kNN in latent and map space, per-point neighbourhood preservation, local density),
`sprites` (thumbnail sprite sheets), `page` (the HTML: data inlined as compressed typed arrays,
templates/atlas.html with its hand-written WebGL2 renderer), `jobs` (rules atlas_points, atlas).
"""
