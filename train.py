"""Train the paper's classifier from video-level labels, evaluating the test AUC after every iteration.

    python train.py --da 64 --r 3

Step for step the authors' run: with the same seed, data and device it gives their sequence of AUCs.
The best model so far is kept in ckpt/SelfAttention-da{da}-r{r}-T{T}-seed{seed}.pth, its history in
the .csv beside it, and the state to --resume from in the .state.pt beside it.
"""
import argparse
import csv
import io
import os

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from cli import add_common_arguments, check_positive, pick_device, run
from dataset import DataError, TestSet, load_train_pools, write_atomic
from metrics import frame_auc
from model import VideoClassifier, checkpoint_name, save_checkpoint

HISTORY_HEADER = ['iteration', 'epoch', 'loss', 'auc']


class PairedSampler:
    """The original's batches: the next B normal samples, then the next B anomalous ones.

    Each pool is walked in an order that np.random.shuffle reshuffles in place at every epoch
    (normal first), after one shuffle at the start; an epoch lasts while position + B < size
    holds for both pools (249 iterations on UCF-Crime).
    """

    def __init__(self, n_normal, n_anomalous, batch_size):
        self.orders = [np.arange(n_normal), np.arange(n_anomalous)]
        for order in self.orders:
            np.random.shuffle(order)
        self.batch_size = batch_size
        self.epoch, self.position = 0, None  # None: no epoch begun yet

    def epoch_over(self):
        return self.position is None or any(self.position + self.batch_size >= len(o) for o in self.orders)

    def new_epoch(self):
        for order in self.orders:
            np.random.shuffle(order)
        self.epoch, self.position = self.epoch + 1, 0

    def take(self):
        """Indices of the next batch into the normal and into the anomalous pool."""
        start, self.position = self.position, self.position + self.batch_size
        return [order[start:self.position] for order in self.orders]

    def state_dict(self):
        return {'orders': self.orders, 'epoch': self.epoch, 'position': self.position}

    def load_state_dict(self, state):
        self.orders, self.epoch, self.position = state['orders'], state['epoch'], state['position']


def official_radam(parameters, lr):
    """The RAdam of Liu et al. that the authors used (degenerated_to_sgd=False), via torch's RAdam.

    While the variance rectifier is undefined (steps 1-5) the official RAdam leaves the weights
    alone, where torch's would take an unrectified step; a learning rate of 0 on those steps
    makes the two the same. From step 6 both take the rectified step.
    """
    optimizer = torch.optim.RAdam(parameters, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps_taken: float(steps_taken >= 5))
    return optimizer, schedule


def rng_state(device):
    state = {'torch': torch.get_rng_state(), 'numpy': np.random.get_state()}
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    if device.type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'], device)


def write_history(path, rows):
    def write(f):
        text = io.StringIO()
        csv.writer(text, lineterminator='\n').writerows([HISTORY_HEADER] + rows)
        f.write(text.getvalue().encode())
    write_atomic(path, write)


def main(args):
    check_positive(args, 'batch_size', 'T', 'test_split_size', 'da', 'r', 'feature_size', 'max_epoch',
                   'eval_every', 'save_every')
    device = pick_device(args.device)
    name = checkpoint_name(args.da, args.r, args.T, args.seed)
    ckpt_path, history_path, state_path = (os.path.join(args.ckpt_dir, name + ext) for ext in ('.pth', '.csv', '.state.pt'))

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = VideoClassifier(args.feature_size, args.da, args.r).to(device)
    print(model)
    print(f'{name}: {sum(p.numel() for p in model.parameters()):,} parameters, on {device}')
    optimizer, schedule = official_radam(model.parameters(), args.lr)
    criterion = nn.BCELoss()
    test_set = TestSet(args.test_rgb_list, args.gt, args.feature_size, device)

    def evaluate():
        # The authors evaluated by iterating a torch DataLoader, and every such iteration draws one
        # base seed from torch's global generator. Drawing it here too keeps the dropout masks, and
        # so the whole run, identical to theirs.
        torch.empty((), dtype=torch.int64).random_()
        return frame_auc(test_set.snippet_scores(model, args.test_split_size), test_set.gt)

    if args.resume:
        if not os.path.isfile(state_path):
            raise DataError(f'{state_path}: no saved state to resume from (train without --resume first)')
        state = torch.load(state_path, map_location='cpu', weights_only=False)
        if state['args'] != run_identity(args):
            raise DataError(f'{state_path}: was saved by a run with {state["args"]}, not {run_identity(args)}')
        normal, anomalous = load_train_pools(args.pre_rgb_list, args.feature_size, args.T)
        sampler = PairedSampler(len(normal), len(anomalous), args.batch_size)
        sampler.load_state_dict(state['sampler'])
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        schedule.load_state_dict(state['schedule'])
        history, best_auc = state['history'], state['best_auc']
        set_rng_state(state['rng'], device)
        print(f'resuming {name} after iteration {len(history) - 1}')
    else:
        first_auc = evaluate()
        history, best_auc = [[0, '', '', float(first_auc)]], first_auc
        print(f'{name}: AUC before training {first_auc:.6f}')
        normal, anomalous = load_train_pools(args.pre_rgb_list, args.feature_size, args.T)
        if min(len(normal), len(anomalous)) <= args.batch_size:
            raise DataError(f'{args.pre_rgb_list}: {len(normal)} normal and {len(anomalous)} anomalous samples '
                            f'(videos x crops); each pool needs more than --batch-size {args.batch_size}')
        sampler = PairedSampler(len(normal), len(anomalous), args.batch_size)
    write_history(history_path, history)

    def save_state():
        state = {'args': run_identity(args), 'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                 'schedule': schedule.state_dict(), 'sampler': sampler.state_dict(), 'history': history,
                 'best_auc': best_auc, 'rng': rng_state(device)}
        write_atomic(state_path, lambda f: torch.save(state, f))

    labels = torch.cat([torch.zeros(args.batch_size), torch.ones(args.batch_size)]).to(device)
    iteration = len(history) - 1
    per_epoch = (min(len(normal), len(anomalous)) - 1) // args.batch_size
    total = min(per_epoch * args.max_epoch, args.max_iters or per_epoch * args.max_epoch)
    progress = tqdm(total=total, initial=iteration, desc=name, dynamic_ncols=True)
    model.train()
    with open(history_path, 'a', buffering=1) as history_file:  # one line a write: never torn
        writer = csv.writer(history_file, lineterminator='\n')
        while iteration < total:
            if sampler.epoch_over():
                if sampler.epoch == args.max_epoch:
                    break
                sampler.new_epoch()
            normal_index, anomalous_index = sampler.take()
            batch = torch.from_numpy(np.concatenate([normal[normal_index], anomalous[anomalous_index]])).to(device)
            loss = criterion(model(batch), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            iteration += 1

            auc = float(evaluate()) if iteration % args.eval_every == 0 else ''
            if auc != '' and auc > best_auc:  # strictly better than the best so far, the first AUC included
                best_auc = auc
                save_checkpoint(model, ckpt_path)
            history.append([iteration, sampler.epoch, loss.item(), auc])
            writer.writerow(history[-1])
            if iteration % args.save_every == 0:
                save_state()
            progress.update()
            progress.write(f'{name} epoch {sampler.epoch} iteration {iteration} loss {loss.item():.4f} '
                           f'auc {auc if auc == "" else f"{auc:.6f}"} max_auc {best_auc:.6f}')
    progress.close()
    save_state()
    if not os.path.isfile(ckpt_path):
        print(f'no iteration beat the AUC before training ({history[0][3]:.6f}): no checkpoint written')
    else:
        print(f'best AUC {best_auc:.6f} (kept in {ckpt_path}); history in {history_path}')


def run_identity(args):
    """What a resumed run must share with the saved one."""
    keys = ['da', 'r', 'T', 'seed', 'batch_size', 'feature_size', 'lr', 'test_split_size', 'eval_every',
            'pre_rgb_list', 'test_rgb_list', 'gt']
    return {k: getattr(args, k) for k in keys}


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--seed', type=int, default=1111)
    parser.add_argument('--batch-size', type=int, default=32, help='normal samples per batch, and as many anomalous')
    parser.add_argument('--max-epoch', type=int, default=10)
    parser.add_argument('--max-iters', type=int, help='stop after this many iterations (default: all epochs)')
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--pre-rgb-list', default='list/pre-ucf-i3d-train-32.list')
    parser.add_argument('--eval-every', type=int, default=1,
                        help='evaluate the test AUC every N iterations (1: the paper, after each)')
    parser.add_argument('--save-every', type=int, default=50, help='save the state to --resume from every N iterations')
    parser.add_argument('--resume', action='store_true', help='continue the interrupted run with these settings')
    args = parser.parse_args()
    run(main, args, 'train.py')
