"""The one table from `config.recipe` to the training method (`sslsr.train.recipe.Recipe`).

Adding a method means writing its module here and adding one row below.
"""

from sslsr.train.recipe import Recipe
from sslsr.train.recipes.gan import GANRecipe
from sslsr.train.recipes.metaf2n import MetaRecipe
from sslsr.train.recipes.ranker import RankerRecipe
from sslsr.train.recipes.resshift import ResShiftRecipe

RECIPES: dict[str, Recipe] = {
    "gan": GANRecipe(),
    "metaf2n": MetaRecipe(),
    "ranker": RankerRecipe(),
    "resshift": ResShiftRecipe(),
}
