// tc_array: the ROWS x COLS weight-stationary systolic array with its skew and deskew.
//
// Weights: while `load` is high, the word on w_row/lane_row/shift_row enters the top row and every row
// passes its word one row down, so ROWS load cycles fill the array (the word entering last stays in
// row 0). Activations: a_rows carries one group bus (LANES x A_BITS) per array row, all rows of the same
// input vector in the same cycle; row r is delayed r cycles (the skew), then the bus moves one PE right
// per cycle. Partial sums enter the top at 0 and move one PE down per cycle, so PE (r, c) works on
// vector m in cycle m + r + c after it entered, and the sum of column c leaves the bottom after
// m + ROWS - 1 + c. Column c then waits COLS - 1 - c cycles (the deskew): y_row holds all columns of one
// vector together, with y_valid, one cycle after PE (ROWS-1, COLS-1) computed it.
// A pass of an h x w weight block therefore takes ROWS (load) + M + ROWS + COLS - 2 (stream) cycles for
// M vectors: the cycle model's 2R + C + M - 2 per fold.
//
// Parameters:
//   ROWS, COLS  array size R x C
//   LANES       G, activations on each row's group bus (1 for dense)
//   A_BITS      activation bits (8)
//   W_BITS      weight bits (8, or 4 with SUBWORD)
//   ACC_BITS    partial-sum bits (32)
//   SUBWORD     1: tc_pe_subword PEs (4-bit weights and a shift bit), 0: tc_pe
//   LANE_BITS   lane-index bits: $clog2(LANES), at least 1
module tc_array #(
    parameter ROWS = 8,
    parameter COLS = 8,
    parameter LANES = 8,
    parameter A_BITS = 8,
    parameter W_BITS = 8,
    parameter ACC_BITS = 32,
    parameter SUBWORD = 0,
    parameter LANE_BITS = (LANES > 1) ? $clog2(LANES) : 1
) (
    input  wire                            clk,
    input  wire                            rst,
    input  wire                            load,
    input  wire [COLS*W_BITS-1:0]          w_row,
    input  wire [COLS*LANE_BITS-1:0]       lane_row,
    input  wire [COLS-1:0]                 shift_row,
    input  wire [ROWS*LANES*A_BITS-1:0]    a_rows,
    input  wire                            a_valid,
    output wire [COLS*ACC_BITS-1:0]        y_row,
    output wire                            y_valid
);
    localparam BUS = LANES * A_BITS;

    // Horizontal nets: bus and valid entering PE (r, c) at index r*(COLS+1)+c; c = COLS leaves the array.
    wire [ROWS*(COLS+1)*BUS-1:0]      a_h;
    wire [ROWS*(COLS+1)-1:0]          v_h;
    // Vertical nets: entering PE (r, c) at index r*COLS+c; r = ROWS leaves the bottom.
    wire [(ROWS+1)*COLS*ACC_BITS-1:0] p_v;
    wire [(ROWS+1)*COLS*W_BITS-1:0]   w_v;
    wire [(ROWS+1)*COLS*LANE_BITS-1:0] l_v;
    wire [(ROWS+1)*COLS-1:0]          s_v;

    assign p_v[COLS*ACC_BITS-1:0]  = {COLS*ACC_BITS{1'b0}};
    assign w_v[COLS*W_BITS-1:0]    = w_row;
    assign l_v[COLS*LANE_BITS-1:0] = lane_row;
    assign s_v[COLS-1:0]           = shift_row;

    genvar r, c;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : skew
            tc_delay #(.WIDTH(BUS + 1), .DEPTH(r)) row_delay (
                .clk(clk),
                .d({a_valid, a_rows[r*BUS +: BUS]}),
                .q({v_h[r*(COLS+1)], a_h[r*(COLS+1)*BUS +: BUS]})
            );
        end
        for (r = 0; r < ROWS; r = r + 1) begin : row
            for (c = 0; c < COLS; c = c + 1) begin : col
                if (SUBWORD) begin : pe_subword
                    tc_pe_subword #(
                        .LANES(LANES), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                        .LANE_BITS(LANE_BITS)
                    ) pe (
                        .clk(clk), .rst(rst), .load(load),
                        .w_in(w_v[(r*COLS+c)*W_BITS +: W_BITS]),
                        .shift_in(s_v[r*COLS+c]),
                        .lane_in(l_v[(r*COLS+c)*LANE_BITS +: LANE_BITS]),
                        .w_out(w_v[((r+1)*COLS+c)*W_BITS +: W_BITS]),
                        .shift_out(s_v[(r+1)*COLS+c]),
                        .lane_out(l_v[((r+1)*COLS+c)*LANE_BITS +: LANE_BITS]),
                        .a_in(a_h[(r*(COLS+1)+c)*BUS +: BUS]),
                        .a_valid_in(v_h[r*(COLS+1)+c]),
                        .a_out(a_h[(r*(COLS+1)+c+1)*BUS +: BUS]),
                        .a_valid_out(v_h[r*(COLS+1)+c+1]),
                        .psum_in(p_v[(r*COLS+c)*ACC_BITS +: ACC_BITS]),
                        .psum_out(p_v[((r+1)*COLS+c)*ACC_BITS +: ACC_BITS])
                    );
                end else begin : pe_word
                    tc_pe #(
                        .LANES(LANES), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                        .LANE_BITS(LANE_BITS)
                    ) pe (
                        .clk(clk), .rst(rst), .load(load),
                        .w_in(w_v[(r*COLS+c)*W_BITS +: W_BITS]),
                        .lane_in(l_v[(r*COLS+c)*LANE_BITS +: LANE_BITS]),
                        .w_out(w_v[((r+1)*COLS+c)*W_BITS +: W_BITS]),
                        .lane_out(l_v[((r+1)*COLS+c)*LANE_BITS +: LANE_BITS]),
                        .a_in(a_h[(r*(COLS+1)+c)*BUS +: BUS]),
                        .a_valid_in(v_h[r*(COLS+1)+c]),
                        .a_out(a_h[(r*(COLS+1)+c+1)*BUS +: BUS]),
                        .a_valid_out(v_h[r*(COLS+1)+c+1]),
                        .psum_in(p_v[(r*COLS+c)*ACC_BITS +: ACC_BITS]),
                        .psum_out(p_v[((r+1)*COLS+c)*ACC_BITS +: ACC_BITS])
                    );
                    assign s_v[(r+1)*COLS+c] = 1'b0;
                end
            end
        end
        // Deskew: the bottom of column c (with the valid of the bottom-row PE that produced it) waits
        // COLS-1-c cycles so that all columns of one vector leave together.
        for (c = 0; c < COLS; c = c + 1) begin : deskew
            wire valid_c;
            tc_delay #(.WIDTH(ACC_BITS + 1), .DEPTH(COLS - 1 - c)) col_delay (
                .clk(clk),
                .d({v_h[(ROWS-1)*(COLS+1)+c+1], p_v[(ROWS*COLS+c)*ACC_BITS +: ACC_BITS]}),
                .q({valid_c, y_row[c*ACC_BITS +: ACC_BITS]})
            );
            if (c == COLS - 1) begin : last
                assign y_valid = valid_c;
            end
        end
    endgenerate
endmodule
