"""Procedural synthetic RGB-D scenes for training guided depth super-resolution.

Every scene is drawn from scratch by a small z-buffer renderer, so the data are licence-free,
unlimited and fully deterministic given a seed. A scene contains:

* a background made of slanted planes (a back wall, usually a floor, sometimes a side wall);
* foreground objects composited with a z-buffer: flat slanted polygons (some with thin table legs),
  3-D cuboids, ellipsoids/spheres, cylinders and curved quadric patches, giving occlusion boundaries;
* thin structures (poles, sagging wires) 1-4 px wide, in front of what lies behind them;
* albedo textures that are independent of depth (solid stripes/checkers in 3-D, image-space noise,
  colour gradients, printed-like blobs and text marks), and objects whose colour nearly equals the
  colour behind them (depth edges with a weak guide edge);
* Lambertian shading from normals computed from the depth, vignetting, camera noise and optional
  blur / JPEG compression on the RGB guide;
* depth sensor effects: noise whose standard deviation grows with depth squared, holes on the far
  side of occlusion boundaries and random dropouts.

Modules: :mod:`~optisr.data.synthetic.config` (:class:`SceneConfig`),
:mod:`~optisr.data.synthetic.geometry` (pinhole camera, z-buffer canvas, planes, polygons, boxes,
curved surfaces, thin structures), :mod:`~optisr.data.synthetic.appearance` (materials, printed
marks, shading and guide formation), :mod:`~optisr.data.synthetic.sensor` (depth sensor noise
and holes) and :mod:`~optisr.data.synthetic.scene` (:func:`make_scene`, :func:`make_batch`,
:func:`preview`). The public names are re-exported here.

Example:
    >>> from optisr.data.synthetic import make_scene, preview
    >>> scene = make_scene(256, 320, seed=0)
    >>> scene.guide.shape, scene.depth.shape
    ((256, 320, 3), (256, 320))
"""

from optisr.data.synthetic.config import SceneConfig
from optisr.data.synthetic.scene import SyntheticScene, disparity_255, make_batch, make_scene, preview

__all__ = ["SceneConfig", "SyntheticScene", "disparity_255", "make_batch", "make_scene", "preview"]
