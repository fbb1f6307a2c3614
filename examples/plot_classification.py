"""
===================================
Decision boundary of the classifier
===================================

``NadarayaWatsonClassifier`` on two iris features: ``predict_proba`` is the
attention-weighted average of the one-hot labels, shaded here for each class
(the Parzen-window classifier), with the width picked by cross-validation.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknw import NadarayaWatsonClassifier

X, y = load_iris(return_X_y=True)
X = X[:, [0, 1]]  # sepal length and width

search = GridSearchCV(
    make_pipeline(StandardScaler(), NadarayaWatsonClassifier()),
    {"nadarayawatsonclassifier__bandwidth": [0.1, 0.2, 0.3, 0.5, 1.0]},
    cv=5,
).fit(X, y)
print(f"best {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")

# %%
# Probabilities on a grid
# -----------------------
# Each class's probability sets the strength of its colour.
x0, x1 = np.meshgrid(
    np.linspace(X[:, 0].min() - 0.5, X[:, 0].max() + 0.5, 200),
    np.linspace(X[:, 1].min() - 0.5, X[:, 1].max() + 0.5, 200),
)
proba = search.predict_proba(np.column_stack([x0.ravel(), x1.ravel()]))
colours = np.array([[0.9, 0.3, 0.2], [0.2, 0.6, 0.2], [0.2, 0.3, 0.9]])
image = (proba @ colours).reshape(*x0.shape, 3)

fig, ax = plt.subplots(figsize=(6, 5))
ax.imshow(
    image,
    origin="lower",
    extent=(x0.min(), x0.max(), x1.min(), x1.max()),
    aspect="auto",
    alpha=0.6,
)
for label, name in enumerate(load_iris().target_names):
    ax.scatter(*X[y == label].T, color=colours[label], edgecolor="k", s=25, label=name)
ax.legend(title="species (shading: predict_proba)", fontsize="small")
ax.set_xlabel("sepal length (cm)")
ax.set_ylabel("sepal width (cm)")
ax.set_title("NadarayaWatsonClassifier on iris")
plt.show()
