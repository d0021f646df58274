"""The one table from `config.recipe` to the training method (`sslsr.train.recipe.Recipe`).

Adding a method means writing its module here and adding one row below.
"""

from sslsr.train.recipe import Recipe
from sslsr.train.recipes.gan import GANRecipe

RECIPES: dict[str, Recipe] = {
    "gan": GANRecipe(),
}
