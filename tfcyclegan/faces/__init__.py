"""Real photos in: find the faces, align them like the training crops, translate, paste back."""
