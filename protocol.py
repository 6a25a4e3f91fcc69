"""The paper's test protocol: every crop of a video is cut into chunks of split_size snippets, each chunk
is scored by the model, a chunk's score is the mean over crops, and every snippet of the chunk gets it."""
import numpy as np
import torch


@torch.no_grad()
def video_scores(model, features, split_size):
    """One video's snippet scores, the original's computation as it is: features [T, crops, F] (a tensor on
    the model's device) -> float32 numpy [T]. Per chunk, model() on its crops [crops, t, F], mean over crops."""
    was_training = model.training
    model.eval()
    scores = [model(chunk.transpose(0, 1)).mean(0).expand(len(chunk)) for chunk in features.split(split_size)]
    model.train(was_training)
    return torch.cat(scores).cpu().numpy()
